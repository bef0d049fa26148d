#!/bin/sh
# The README's pictures, made by diffcli plot itself: run from the repository root.
set -e
diffcli plot "x*sin(x)" --grid x=-6:6:400 --show value,grad,hessian --size 800x450 --output docs/plot-derivatives.png
diffcli plot "sin(x)*exp(-y**2)" --grid x=-3:3:31 --grid y=-2:2:21 --size 640x400 --output docs/plot-gradient-field.png
