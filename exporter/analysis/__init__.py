"""Pure analysis functions: numbers in, numbers out. No I/O, no clock."""
