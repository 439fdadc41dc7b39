from suanli_scheduler.main import main

main()
