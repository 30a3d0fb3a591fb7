"""`python -m gs4_ros.io.synthetic --seed 3 --frames 60 --out /tmp/syn` writes preview PNGs."""
from .preview import main

main()
