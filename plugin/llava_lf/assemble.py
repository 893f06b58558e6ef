"""The assembler's public names, kept here for existing callers; the code lives in `llava_lf.assembly`."""

from .assembly import AssemblyError, AssemblySpec, ImportSpec, assemble, import_llava

__all__ = ["AssemblyError", "AssemblySpec", "ImportSpec", "assemble", "import_llava"]
