"""Built-in sources (IO): video_source, serial_sensor, audio_source, synthetic_source.

Each module holds one plugin; heavy imports (cv2, serial) happen in ``configure`` so that
listing plugins stays fast. See docs/nodes.md.
"""
