from suanli_catalog.main import main

main()
