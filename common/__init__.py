"""Pieces every streamrec package shares: the root error, settings helpers, devices,
pacing of background work.

It sits at the bottom of the import flow (cli -> eventlog -> worker -> encoder,
index, kafka_io -> common) and imports no other streamrec package.
"""
