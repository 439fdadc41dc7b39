from suanli_inference_gateway.main import main

main()
