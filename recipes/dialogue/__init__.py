"""The full-duplex dialogue recipe: synthetic two-channel corpus (`synth`, `tasks`), grids and
tokenizer (`prepare`), the training task (`task`, `train`) and the turn-taking scorer (`turns`,
`score`). Driven by egs/mini/dialogue1/run.sh."""
