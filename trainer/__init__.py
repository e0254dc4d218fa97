"""Training, evaluation and personalization for the CLIPCropping model (imports clipcrop_plugin, never the reverse)."""
