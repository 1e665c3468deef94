"""Media I/O: reading photos and videos, writing them back, and atomic outputs.

``reading`` turns a source into media items and frames (limits checked from headers,
``image_header``); ``video`` decodes with PyAV; ``video_writer`` encodes with the source's
timing and audio; ``image_metadata`` keeps or drops a photo's metadata; ``outputs`` writes
files atomically and never over an input. Nothing here knows about faces or nodes.
"""
