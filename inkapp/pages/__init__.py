"""Whole pages and rubbings: find the characters (:mod:`.ink`, :mod:`.layout`,
:mod:`.crops`), attribute the hand by their votes (:mod:`.attribute`), draw the result
(:mod:`.draw`). :mod:`.synthetic` composes evaluation pages from single characters."""
