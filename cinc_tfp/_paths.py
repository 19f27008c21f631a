"""How the package reads a path: local (made absolute) or `scheme://`."""

import os


def is_remote(path):
  """Whether `path` names a `tf.io.gfile` filesystem (`gs://`, `ram://`)."""
  return '://' in os.fspath(path)


def resolve(path):
  """The one form of a path: absolute for local paths (`~` expanded,
  symlinks kept), unchanged but for a trailing `/` for `scheme://` paths."""
  path = os.fspath(path)
  if is_remote(path):
    scheme, rest = path.split('://', 1)
    return f'{scheme}://{rest.rstrip("/")}'
  return os.path.abspath(os.path.expanduser(path))
