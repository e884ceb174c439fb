"""The framework's neutral core, shared by ``lit_moe`` and ``lit_video`` (imports neither): user-facing
errors, the command-line entry point, atomic file writes and the checkpoint plug-ins."""
