"""Front-end sources (widget and console), installed as ``livesupport.js`` package data."""
