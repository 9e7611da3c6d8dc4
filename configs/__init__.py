"""Training configurations: one `get_config()` file per recipe, sharing `configs.common`.

An importable package (installed with vipdl), so config files loaded by path -- as
`ml_collections` config flags and `vipdl.cli` do -- can import `configs.common` without touching
`sys.path`. Nothing in `vipdl/` imports it.
"""
