from kdumpd.cli import main

raise SystemExit(main())
