"""Pieces every streamrec package shares: the root error and the settings helpers.

It sits below `worker`, `encoder` and `index` and imports none of them, so imports
always flow one way: CLI -> pipeline -> stages -> common.
"""
