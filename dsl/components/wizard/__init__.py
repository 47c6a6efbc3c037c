"""``wizard.v1``: questions asked one at a time, answers stored typed.

Each step stores its answer into ``vars[name]``: text and email as
strings, integer as int, number as float, date as an ISO date string,
yes/no as a bool, choice as the option's value, phone as the number of the
user's own shared contact. Entering the wizard clears the variables of all
its steps, so a skipped optional step reads None, never an older answer.

An invalid answer gets the step's error (or the built-in one for its type)
with the question again; after ``max_attempts`` invalid answers to one step
the wizard is cancelled. ``/cancel`` and the Cancel button go to
``on_cancel`` (the start node by default), ``/back`` and Back return to the
previous step, ``/skip`` and Skip pass an optional step. In groups, text
questions mention the user and use a selective ``force_reply``, because
with privacy mode the bot only sees replies to it and commands.
"""

from dsl.components.wizard.node import WizardNode
from dsl.components.wizard.steps import WizardStep

__all__ = ["WizardNode", "WizardStep"]
