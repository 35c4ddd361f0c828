"""From a folder of photos or a video to a posed scene that train.py reads (prepare.py).

frames.py  photos or evenly spaced, sharpest video frames, downscaled to a maximum side
sfm.py     COLMAP's structure from motion through pycolmap: features, matching, mapping, undistortion
scale.py   SfM has no metric scale: metres per unit, given or estimated from an assumed camera step
align.py   similarity alignment (Umeyama) and pose errors against known cameras
write.py   transforms.json (OpenGL c2w), images/, images_2/, sparse/0 and prepare.json
pipeline.py  the recipe prepare.py runs: frames -> SfM -> scale -> write
synthetic.py  a textured render of the demo scene with its true poses, to check the whole chain
"""
