"""click front end: each command is a thin layer over a library function."""
