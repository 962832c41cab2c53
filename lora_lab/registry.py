"""A name → object registry that fails with the list of valid choices.

Every config group that selects code (tasks, methods, job kinds, metrics, loggers, …) goes through one of
these, so adding an option is one decorator and a typo always names the choices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from lora_lab.config.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, key: str):
        self.what = what  # e.g. "method"
        self.key = key  # the config key users set, e.g. "method.name"
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def option(self, cls: T) -> T:
        """Register a class (a method, a task) under its schema's `name` default, which also becomes
        `cls.name`: the schema is the one place the option's name is spelled (its YAML file's name is checked
        against it by the defaults test)."""
        name = cls.schema.name
        cls.name = name
        self.add(name, cls)
        return cls

    def add(self, name: str, obj: T) -> None:
        self.register(name)(obj)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(self.key, name, f"unknown {self.what}", choices=sorted(self._items))
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
