from smartmetrics.app.cli import main

raise SystemExit(main())
