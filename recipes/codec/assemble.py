"""`python -m recipes.codec.assemble`: see recipes/codec/export.py."""
from .export import main_assemble

if __name__ == "__main__":
    main_assemble()
