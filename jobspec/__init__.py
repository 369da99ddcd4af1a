"""What a picture job asks for: prompt syntax and parameters.

Pure Python without torch (``clip_text`` uses ftfy and regex, as open_clip does), so the bot,
the queue and the engine all read and validate jobs the same way.
"""

from jobspec.batch import batch_key
from jobspec.params import LIMITS, JobParams, ParamError
from jobspec.prompts import NoisePrompt, Prompt, PromptError, parse_noise_prompts, parse_prompts

__all__ = [
    "LIMITS",
    "JobParams",
    "NoisePrompt",
    "ParamError",
    "Prompt",
    "PromptError",
    "batch_key",
    "parse_noise_prompts",
    "parse_prompts",
]
