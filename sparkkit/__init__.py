"""sparkkit: deploy and verify an LLM stack on a DGX Spark (or a rehearsal host) over SSH."""

__version__ = "0.1.0"
