"""Write the seeded, untrained stand-in codec (`dialogue.demo.untrained_codec`): used by --tiny runs
and while no trained codec is bundled. The demo rebuilds the same codec (same id) when none is."""
import sys

from dialogue.demo import untrained_codec

print(untrained_codec().save(sys.argv[1], "untrained stand-in (seeded random weights)"))
