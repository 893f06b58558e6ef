"""GPT-assisted instruction data: COCO captions and boxes -> LLaVA conversations through a text-only teacher."""

from .client import TeacherClient, TeacherConfig
from .runner import GenerateJob, run_generation

__all__ = ["GenerateJob", "TeacherClient", "TeacherConfig", "run_generation"]
