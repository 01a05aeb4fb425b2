"""The demo checkpoint `llava-st-demo` (transformers host), shipped as package data: `llava-st demo` finds it
with importlib.resources, in a checkout and in an installed wheel alike."""
