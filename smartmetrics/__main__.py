from smartmetrics.cli import main

raise SystemExit(main())
