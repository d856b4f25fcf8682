from neuron2graph.cli import main

main()
