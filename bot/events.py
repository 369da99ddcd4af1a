"""The client events the bot's features tell each other by (``client.dispatch``), beside Discord's own.

A feature sends one with ``client.dispatch(NAME, ...)``; a cog hears it with a listener named
``on_<name>``, or waits for it with ``client.wait_for(NAME, timeout=...)``.
"""

JOBS_CHANGED = "jobs_changed"
"""Jobs changed in the store (a worker's progress, a cancel, a new job): whatever shows jobs looks again."""

JOB_BUTTON = "job_button"
"""A JobButton was clicked: (interaction, action, job id)."""
