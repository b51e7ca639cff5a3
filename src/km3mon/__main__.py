from km3mon.cli import main

raise SystemExit(main())
