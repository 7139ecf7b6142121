"""The marine Q&A dataset builder: load -> clean -> dedupe -> split -> decontaminate -> write -> push."""
