"""What crosses attnviz's edge: files written whole or not at all, files read safely, the
pairs file, text from outside made printable, and the signals held while files are renamed."""
