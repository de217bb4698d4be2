"""`cohort-streamer segments`: every Segments API family of the reference, and segments as code.

- cli: the command line, output and exit codes
- api: the HTTP client (no redirects, capped answers)
- documents: JSON/YAML files (YAML 1.2 booleans: `on` stays "on")
- filter_commands: v3 filter segments list/get/create/update, v2 archive/unarchive
- file_commands: v2 file segments create/add/remove/replace, `--wait`
- callbacks: the receiver of file-segment results (`segments callbacks --port`)
- plan, plan_commands: segments as code (`plan`/`apply -f segments.yaml`)
- pacing: the client-side v3 rate limits
"""

from .cli import add_arguments, run

__all__ = ["add_arguments", "run"]
