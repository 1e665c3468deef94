"""Detector implementations behind the ``model.*`` nodes.

The modules here import TensorFlow only when a detector is built, so importing
``facepriv`` (for ``--help``, config checks or listing nodes) stays light.
"""
