"""MarineBench: does LoRA/QLoRA fine-tuning of a small chat model on marine-biology Q&A help?"""

__version__ = "0.1.0"
