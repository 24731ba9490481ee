"""Method registry; importing this package registers every method."""

from aikd.methods import aikd, baseline, cskd, frskd, pskd, tfkd  # noqa: F401  (registration)
from aikd.methods.base import Method, create_method, list_methods, method_class, register_method

__all__ = ["Method", "create_method", "list_methods", "method_class", "register_method"]
