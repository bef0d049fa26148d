#!/bin/sh
# The README's pictures, made by diffcli plot itself: run from the repository root.
set -e
diffcli plot "x*sin(x)" --grid x=-6:6:400 --show value,grad,hessian --size 800x450 --output docs/plot-derivatives.png
diffcli plot "sin(x)*exp(-y**2)" --grid x=-3:3:31 --grid y=-2:2:21 --size 640x400 --output docs/plot-gradient-field.png
diffcli propagate "v**2*sin(2*t)/9.81" --grid t=0.1:1.47:200 --at v=20 --sigma t=0.1 --order 2 --plot-output docs/propagate-band.png
