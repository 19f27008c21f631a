"""How the package quotes an error it wraps in its own."""


def first_line(error):
  """The first line of `error`'s message, its spaces collapsed; the error's
  type name if the message is empty."""
  lines = str(error).strip().splitlines()
  return ' '.join(lines[0].split()) if lines else type(error).__name__
