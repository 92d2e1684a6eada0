"""The error of a bad crawl option, apart from the options themselves: the URL checks the
options run (crawler._urls) raise it too, and an import of _options from there would be a
loop."""

from __future__ import annotations

from .._errors import UsageError

__all__ = ["OptionError"]


class OptionError(UsageError):
    """A bad value for one crawl option.

    The message names options as the Python API spells them (``max_pages``); the command
    line re-renders it with the flags the user typed (``--max-pages``): ``template`` holds
    ``{field_name}`` placeholders and :meth:`named` fills them with any spelling.
    """

    def __init__(self, field: str, template: str) -> None:
        self.field = field
        self.template = template
        super().__init__(self.named(lambda name: name))
