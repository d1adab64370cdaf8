from bhbench.cli import main

raise SystemExit(main())
