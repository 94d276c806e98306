"""hero_codescalers: tags what it enqueues in hero_proc and cleans it up."""

__version__ = "0.1.0"
