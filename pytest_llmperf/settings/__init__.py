"""Settings: the option table (every flag, environment variable and ini key), the value
parsers, and the resolution command line > environment > ini > default into one immutable
record."""
