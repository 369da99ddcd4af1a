"""What a picture job asks for: prompt syntax and parameters.

Pure Python with no third-party imports, so the bot (no torch), the queue and
the engine all read and validate jobs the same way.
"""

from jobspec.params import LIMITS, JobParams, ParamError
from jobspec.prompts import NoisePrompt, Prompt, PromptError, parse_noise_prompts, parse_prompts

__all__ = [
    "LIMITS",
    "JobParams",
    "NoisePrompt",
    "ParamError",
    "Prompt",
    "PromptError",
    "parse_noise_prompts",
    "parse_prompts",
]
