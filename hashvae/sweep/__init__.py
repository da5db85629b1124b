"""A sweep from its config: the one layer that reads the experiment config.

config_check validates a ConfigDict, specs turns it into the typed records
the layers below take, describe says in one line what data was loaded, and
experiment runs config -> data -> grids -> codes -> metrics -> the
workdir's files.
"""
