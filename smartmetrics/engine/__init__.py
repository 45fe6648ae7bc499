"""The engine: pure computation from a series and its settings to a fitted band, with no I/O and no
clock. The series grid, features, periods and curve classification, the models and their ensemble,
training cleaning, bands and calibration, stuck and sustained detection, regimes, natural ranges,
releases and level following, the rules-exact alert replay, and the band as stored (`state`).

It imports nothing else of smartmetrics: every other subpackage builds on it.
"""
