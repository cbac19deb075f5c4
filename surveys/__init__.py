"""The science of Safespace, in pure Python: instruments, cadence, tallies, statistics, disclosure.

Nothing here imports the web framework, the database layer or the template engine, so the
rules can be read, tested and reused on their own.
"""
