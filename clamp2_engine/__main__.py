from clamp2_engine.cli import main

main()
