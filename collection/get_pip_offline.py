"""A stand-in for pip's get-pip.py bootstrap script, which ansible-test
downloads from a host this project does not reach (collection/sanity.sh
puts it in ansible-test's cache): pip from the Python's own ensurepip, then
`pip install` with the arguments ansible-test gives (its pinned pip and
packages, from PyPI)."""
import ensurepip
import runpy
import sys

ensurepip.bootstrap()
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
sys.argv = ['pip', 'install'] + args
runpy.run_module('pip', run_name='__main__', alter_sys=True)
