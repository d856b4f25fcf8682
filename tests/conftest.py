"""Test-suite root. Its presence puts tests/ on sys.path, so shared helpers such as
`system_tools` import by name from every tier."""
