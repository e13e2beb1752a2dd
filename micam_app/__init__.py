"""The Gradio front end of MI CAM Explorer: text, views, handlers and layout (no tensors here)."""
