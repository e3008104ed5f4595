"""OpenCV, imported without its loader's side effect: it appends its folder to LD_LIBRARY_PATH in os.environ,
which glibc read at process start anyway; a library must leave its host's environment as it found it."""

import os

_environ = dict(os.environ)
import cv2  # noqa: E402

for _key in set(os.environ) - set(_environ):
    del os.environ[_key]
os.environ.update(_environ)

__all__ = ["cv2"]
