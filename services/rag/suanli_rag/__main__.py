from suanli_rag.main import main

main()
