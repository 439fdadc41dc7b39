from suanli_auth.main import main

main()
